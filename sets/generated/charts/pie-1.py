import matplotlib.pyplot as plt

labels = ["Cherries", "Apples", "Pears", "Plums"]
shares = [20, 5, 40, 35]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.pie(shares, labels=labels, autopct="%d%%", startangle=90)
ax.set_title("Fruit sold (%)")
plt.tight_layout()
plt.show()
